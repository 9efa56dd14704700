"""Figures (matplotlib is imported here only, lazily by callers)."""
from __future__ import annotations

import numpy as np

__all__ = ["plot_spectra"]


def plot_spectra(freqs, observed, predicted, *, labels=("simulated (Welch)", "predicted"),
                 title=None, ax=None):
    """Observed against predicted power spectra on log axes.

    Parameters
    ----------
    freqs : ndarray, shape (n_freqs,)
        Frequencies in Hz.
    observed, predicted : ndarray, shape (n_freqs,)
        Power spectral densities (same units).
    labels : tuple of str
        Legend labels of the two curves.
    title : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    else:
        fig = ax.figure
    ax.loglog(freqs, observed, color="0.4", lw=1.0, label=labels[0])
    ax.loglog(freqs, predicted, color="C3", lw=2.0, label=labels[1])
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power spectral density")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(True, which="both", alpha=0.2)
    return fig
