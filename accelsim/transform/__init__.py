"""Graph transforms: ``Graph -> Graph`` rewrites that read op roles, never shapes, to decide
what each op is.

* ``layout``: ``Parallelism``, the layout (chips = tp x pp x dp; ep over the tp x dp chips).
* ``dp``, ``tp`` (with ``tp2d``), ``ep``, ``pp``: the passes ``shard`` chains (``sharding``).
* ``byte_stages``: pipelines cut by resident bytes for SRAM-only chips.
* ``fusion``: kernel fusion, ``fuse(graph, policy, unfused)``.
"""
from __future__ import annotations

from accelsim.transform.byte_stages import byte_stages, resident_bytes
from accelsim.transform.fusion import POLICIES, UNFUSED, Policy, Unfused, fuse
from accelsim.transform.layout import ATTENTION_SHARDING, MAX_CHIPS, Parallelism
from accelsim.transform.pp import SEND_PREFIX, layer_stages, pipeline_sends, stage_graphs
from accelsim.transform.sharding import shard

__all__ = ["ATTENTION_SHARDING", "MAX_CHIPS", "POLICIES", "Parallelism", "Policy", "SEND_PREFIX", "UNFUSED", "Unfused",
           "byte_stages", "fuse", "layer_stages", "pipeline_sends", "resident_bytes", "shard",
           "stage_graphs"]
