"""Static files: the demo page served at `/`."""
