"""The pull-request report: git and DVC at two revisions, and its Markdown."""
