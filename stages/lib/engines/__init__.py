"""Where work runs: the Engine interface (base) and one subpackage per engine, which a stage opens with
base.open_engine by the name compute.engine gives; dvc.yaml lists the chosen engine's folder.

    local/  this process: independent fits side by side in threads, sized to the usable cores
    dask/   a Dask cluster (DASK_SCHEDULER_ADDRESS or Dask's config, else a LocalCluster on this machine);
            the only code that imports dask or distributed
"""
