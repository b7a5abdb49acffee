"""Bring models from outside the catalogue into accelsim's IR.

``torch_export`` lowers a real ``torch.nn.Module``; ``density`` measures activation density on
one; ``simulate`` runs an imported graph through the same backends as ``accelsim.simulate``.
Only ``torch_export`` and ``density`` need torch, and they import it themselves.
"""
