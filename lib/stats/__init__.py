"""What the calibration hooks gather on a matrix's inputs: norms, selectivity, Hessians."""
