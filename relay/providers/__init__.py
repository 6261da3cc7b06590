"""Model providers (upstreams) and the router that picks one for a model name."""
