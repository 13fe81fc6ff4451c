"""Drawing: the only part of convlens that imports matplotlib. Figure functions return Figures."""
