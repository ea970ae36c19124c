"""Everything between the host and a phone: transports, Device, profiles, jobs, the simulated phone.

Must not import torch or tensorflow.
"""
