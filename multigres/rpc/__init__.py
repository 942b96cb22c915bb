"""Control-plane RPC messages shared by the services (gRPC only, never the query path): each
service serves or calls them without importing another service."""
