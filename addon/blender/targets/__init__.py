"""The targets floor: one reader per target format (images, clips) into the training renders' pipeline, and
the check the Targets panel shows. Imports only the scene floor."""
