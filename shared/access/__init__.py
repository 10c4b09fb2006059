"""Who is calling, and the run they name, read together on the accept path."""
