"""quantzoo_safety"""
