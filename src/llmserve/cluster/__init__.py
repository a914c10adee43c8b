"""The Ray Serve runtime: the application built from the same `ServerConfig` as the local one."""
