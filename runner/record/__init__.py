"""Stage 5, the record: results.json, the console table, event files and plots."""
