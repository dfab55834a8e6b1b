"""The fitting engine. Never imports bpy: it is tested with plain pytest."""
