# Turns the binary file IN into a C source OUT defining
#   const unsigned char catalogd_descriptor_set[]; const size_t catalogd_descriptor_set_len;
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* Generated from ${IN}; do not edit. */\n#include <stddef.h>\n"
  "const unsigned char catalogd_descriptor_set[] = {\n${body}\n};\n"
  "const size_t catalogd_descriptor_set_len = ${len};\n")
