"""Convert and revert: one crash-safety story, read together. artifacts says what a conversion
creates, rewrite and plan decide (pure), staging prepares the big files, apply writes under
podman's lock with a journal, convert and revert run the steps, leftovers cleans up after
`podman machine rm`."""
