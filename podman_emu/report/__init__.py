"""Reports over everything below: the machine inventory (`list`, `inspect`) and `doctor`."""
