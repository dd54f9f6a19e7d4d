"""podman's side of the world, read-only: where a machine's config is, which layout it has, its
exact bytes, whether it validates, and whether the machine is running."""
