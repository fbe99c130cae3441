def test_real_blender_module_imports_and_makes_a_scene(empty_blend):
    import bpy

    assert bpy.app.version >= (4, 2, 0)
    obj = bpy.data.objects.new("Empty", None)
    empty_blend.collection.objects.link(obj)
    assert empty_blend.objects["Empty"] is obj
