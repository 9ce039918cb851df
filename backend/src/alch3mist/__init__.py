"""material-alch3mist backend."""
