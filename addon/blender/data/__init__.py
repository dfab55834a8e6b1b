"""The data floor: what SceneFit keeps in Blender (property groups, add-on preferences) and how a clicked
property becomes a random-property spec. Imports only the scene floor."""
