"""End-to-end studies, each one library function behind one CLI subcommand."""
