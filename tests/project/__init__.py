"""The project around the code: the Dockerfile, template.yaml, the pins, the README's commands and CI."""
