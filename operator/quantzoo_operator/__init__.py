"""quantzoo_operator"""
