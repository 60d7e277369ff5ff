"""`alsatian_hf.store`: block identity (content and prefix hashes) and the content-addressed block store."""
