"""Tests of the front doors, over real sockets."""
