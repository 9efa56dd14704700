"""The canonical microcircuit (CMC): equations, spectra and simulation (numpy/scipy only)."""
