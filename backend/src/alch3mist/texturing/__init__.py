"""Texturing a given mesh: the geometry behind the ``texture`` stage (``alch3mist.stages.texture``).

``mesh_input``  load + check + normalise a user's mesh (GLB / glTF / OBJ / PLY), the one loader for CLI and API
``uv``          keep usable UVs or unwrap (xatlas, own process); rasterise the UV layout into texel surface points
``views``       cameras around the mesh, neutral renders for the edit, the grid image and its tiles
``projection``  back-project edited views into the texels (visibility, view-angle and edge weights)
``fill``        fill unseen texels from the nearest seen surface in 3D, pad the charts' gutters
``pbr``         metallic / roughness factors for the material the request names

The exact per-pixel geometry comes from :mod:`alch3mist.mesh.gbuffer`. docs/texturing.md explains the method.
"""
