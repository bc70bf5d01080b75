"""Training of the bundled demo model (a tiny Janus trained on the shapes world). Qt-free; CPU is enough."""
