"""Pipeline authoring and publishing (models arrive with the SDK and REST issue)."""
