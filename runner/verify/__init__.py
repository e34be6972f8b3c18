"""Stage 4, verification: every derivative checked by a second method, and the declared outcome judged."""
