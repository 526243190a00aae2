"""The gRPC surface (etf_engine.v1): parse and authorise requests, hand them to the engine, format replies."""
