"""creation/sources"""
