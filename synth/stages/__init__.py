"""Pipeline stages: concepts -> twins -> captions -> images -> filter -> export.

Each stage is a small class with ``name``, ``upstream``, ``settings()``, ``plan(ctx)`` and
``process_shard(index, items, ctx)``; ``synth.engine.run_stage`` does resume, atomic writes and
done-markers for all of them. Captions, images and filter share one sharding (concepts sorted by id,
``run.concepts_per_shard`` per shard), so shard i of each belongs to the same process.
"""
