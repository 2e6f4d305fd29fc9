"""Views of the browser panel, one module per page family."""
