"""Files: platform folders, PNG images with metadata (atomic saves), logs. Qt-free."""
