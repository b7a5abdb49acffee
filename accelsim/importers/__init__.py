"""Bring models and workloads from outside the catalogue into accelsim.

``torch_export`` lowers a real ``torch.nn.Module`` into the IR (``accelsim.api.simulate_graph``
costs it); ``density`` measures activation density on one; ``scalesim`` reads SCALE-Sim's config
and topology files and reproduces its report's numbers.  Only ``torch_export`` and ``density``
need torch, and they import it themselves.
"""
