"""quantzoo_engine"""
