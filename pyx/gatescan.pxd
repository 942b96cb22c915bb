# The interface of pyx/gatescan.pyx (the gateway's per-read-event scanners): Python-level only
# for now (scan_client, scan_server); nothing is cimported from it yet.
