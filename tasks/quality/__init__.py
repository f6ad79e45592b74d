"""The fastText quality classifier: training it on reference texts against a build, scoring a build with it."""
