// Reading and writing safetensors files, the format PyTorch state dicts are shared in.
//
// A file is an 8-byte little-endian length N, N bytes of UTF-8 JSON, then a data buffer:
//
//   {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
//    "__metadata__": {"format": "pt"}}
//
// Offsets are relative to the start of the buffer; data is little-endian and row-major; the
// tensors cover the buffer without gaps or overlaps. Loading checks the whole header against the
// buffer before anything can be read, so an untrusted or corrupt file yields a FormatError that
// names the file and the fault, never a read out of bounds.
//
//   auto file = mlstm::safetensors::File::load("model.safetensors");  // maps the file
//   auto w = file.read<float, 2>("w");           // F64, F32, F16 or BF16 data, as float
//   file.read_into("b", mlstm::TensorMap<float, 1>(bias, n));
//
//   mlstm::safetensors::Writer out;
//   out.add("w", w).add_converted("w_bf16", w, mlstm::safetensors::DType::BF16);
//   out.set_metadata("format", "pt");
//   out.save("copy.safetensors");                // a temporary file, renamed when complete
#pragma once

#include "mlstm/io/safetensors_dtype.hpp"   // DType, its table and codecs
#include "mlstm/io/safetensors_header.hpp"  // header parsing and validation, limits, TensorInfo
#include "mlstm/io/safetensors_reader.hpp"  // File, TensorView
#include "mlstm/io/safetensors_writer.hpp"  // Writer
