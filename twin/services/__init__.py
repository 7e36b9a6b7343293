"""gRPC services and the DCC policy they enforce."""
