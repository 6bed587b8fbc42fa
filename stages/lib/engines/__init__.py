"""The engines behind stages.lib.compute.Engine; a stage opens one with compute.open_engine.

    local   this process, and joblib's worker processes for independent fits (one per usable core)
    dask    a Dask cluster: DASK_SCHEDULER_ADDRESS (or Dask's config), else a LocalCluster on this machine;
            the only module that imports dask or distributed
"""
