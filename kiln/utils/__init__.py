"""kiln.utils: data loading (`kiln.utils.data`)."""
