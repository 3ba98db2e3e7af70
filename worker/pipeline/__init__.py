"""One brief's flow: route -> prompt -> generate -> clean -> score -> select, and the runner that stores it."""
