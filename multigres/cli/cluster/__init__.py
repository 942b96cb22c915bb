"""``multigres cluster``: a local cluster (etcd, Postgres primaries, replicas) on one machine."""
