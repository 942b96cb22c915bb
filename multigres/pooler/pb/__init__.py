"""Protocol-buffer messages of the pooler's gRPC control-plane service (see pooler_pb)."""
