"""Running ``tritonserver`` here: locating the bundled binary and backend stubs, the launcher, the supervisor
that restarts it, the container probe and training on demand before the first serve."""
