"""Binary codes: binarisation, packing, Hamming distances."""
