"""Front doors: the HTTP APIs through which clients start, read and cancel sessions."""
