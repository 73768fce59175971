# pkg-config file for libcorio (installed to lib/pkgconfig/corio.pc).
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/corio.pc.in
  ${CMAKE_BINARY_DIR}/corio.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/corio.pc DESTINATION lib/pkgconfig)
