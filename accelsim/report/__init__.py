"""Reports: terminal tables, Markdown/HTML documents and plots built from ``Result`` data."""
