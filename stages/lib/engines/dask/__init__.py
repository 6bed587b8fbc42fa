"""The Dask engine: a Dask cluster; the only code of the project that imports dask or distributed."""
