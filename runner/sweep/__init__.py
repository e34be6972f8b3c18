"""Stage 6, the sweep: folders, resume, progress lines and the summary of every job."""
